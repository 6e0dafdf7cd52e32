"""The parts of ``benchmarks/pose_service.py``: the frames (``frames``), the bare backend loop
(``bare``), the service process (``service``), the WebSocket clients and their figures
(``clients``) and the table and JSON line (``report``).  The script itself only parses options
and runs them in order."""
