"""The master's read-only web dashboard: pages for the cluster, agents, frameworks, tasks
(state history, sandbox logs), dataflow jobs and genetic runs, refreshed in place.

:mod:`substrate.dashboard.app` holds the aiohttp routes, :mod:`~substrate.dashboard.pages` the
pages, :mod:`~substrate.dashboard.views` the views of frameworks' status documents,
:mod:`~substrate.dashboard.chart` the inline SVG chart and :mod:`~substrate.dashboard.markup`
the escaping HTML helpers. ``static/`` holds the only script and style sheet (no CDN, works
offline). The master mounts it beside ``/state`` and ``/metrics``
(:mod:`substrate.master.http`).
"""
