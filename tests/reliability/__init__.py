"""The reliability suite (issue 17): faults a machine has and hostile input a user or a file brings, beyond ingest.

Every case asserts the message a person gets (CLI: exit 2 and ``error: …`` on stderr, never "this is a bug";
app: ``st.error`` and no traceback, through Streamlit's AppTest) and that the workspace is unchanged (a
fingerprint of every table — rows and a digest of every value and every row — and so of the decision log).
Ingest's own bad-file cases live in tests/test_ingest.py and tests/test_faults.py.
"""
