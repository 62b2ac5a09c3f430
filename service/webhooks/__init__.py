"""Completion webhooks: where a job may call back (``policy``), what it sends and how it is signed
(``payload``, ``signing``), and the thread that delivers them with retries (``dispatcher``)."""
