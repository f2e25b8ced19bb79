"""Worker processes: the template (fork server), the handle on a worker, what runs inside one."""
