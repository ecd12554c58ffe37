"""Recipes: the document (:mod:`.model`), its SQL (:mod:`.compile`, over the relation of :mod:`.source`), mixture
arithmetic (:mod:`.mixture`) and the draft the pages share (:mod:`.draft`). Counting and selecting with a
recipe is :mod:`curate_core.select`."""
