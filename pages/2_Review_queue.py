"""Review queue: the flagged rows one at a time — whole text, labels with the probe's probabilities, why each
method flagged it, its nearest neighbours — decided with the keyboard (curate_core.review)."""

from curate_ui import labelview, layout, reviewview

ws = layout.require_workspace("Review queue", ":material/rate_review:")
data = labelview.require_data(ws, "The review queue", "The review queue needs")
reviewview.page(ws, data)
