"""The web console at ``/console``: stored responses with their timelines, a playground and an overview
(see :mod:`parley.console.routes`)."""
