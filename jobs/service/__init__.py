"""What every front end does, once: prediction runs (``runs``), submitted tasks
(``tasks``), and the dispatcher that puts work in this process or on the broker
(``dispatch``, ``wiring``). The CLI, the page, the demo and the Python API parse,
call these, and format."""
