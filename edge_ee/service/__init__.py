"""Running edge-ee unattended: systemd notification and watchdog (``sdnotify``, ``watchdog``), the TOML
config file (``config``), SIGHUP reload (``reload``), Prometheus metrics (``metrics``) and
``edge-ee service install`` (``install``).

The runtime pieces are :class:`~edge_ee.pipeline.runner.RunHook` objects;
:func:`edge_ee.service.attach.attach_service_hooks` wires them into ``edge-ee run``. Nothing
here is imported unless used (prometheus_client is optional).
"""
