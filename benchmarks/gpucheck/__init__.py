"""The parts of ``benchmarks/gpu_check.py``: sizes, data and timing (``common``), the view sources
(``sources``), processes sharing the device (``sharing``), the learning check (``learning``), the
ring against uniform negatives (``ring``) and a SciPy-free t-interval (``stats``)."""
