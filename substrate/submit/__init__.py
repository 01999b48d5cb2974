"""``offerpool submit``, ``status`` (drivers), ``logs`` and ``config``: batch pipelines.

A submitted driver runs either on this machine (client mode, :mod:`.client`) or as a task on
the cluster (``--cluster``, :mod:`.cluster`); both can be supervised (relaunched when they die,
up to a retry limit, :mod:`.supervisor`) and both leave a record (:mod:`.records`) that
``offerpool status`` and ``offerpool logs`` read. ``submit --detach`` runs either in the
background and ``offerpool kill`` stops it (:mod:`.detach`). The command-line side is
:mod:`.commands`.
"""
from substrate.submit.records import DriverRecord, list_records
from substrate.submit.supervisor import Supervisor

__all__ = ["DriverRecord", "Supervisor", "list_records"]
