"""Where golemd/driver and golemd/server import the worker side from.

`Template` (the fork server) lives in template.py and `Worker` (the handle
on one worker) in worker_handle.py; this module only names them for the
modules that still import them from here.
"""

from golemd.host.template import Template, TemplateError, sweep_orphans
from golemd.host.worker_handle import Worker, WorkerDied, describe_exit

__all__ = ["Template", "TemplateError", "Worker", "WorkerDied", "describe_exit", "sweep_orphans"]
