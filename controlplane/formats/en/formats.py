"""One way to write a moment everywhere a person reads one (pages, admin, decision cards):
``2026-12-03 13:50:02 UTC``, in ``TIME_ZONE`` and naming it. The dashboard's JavaScript
writes the same (``Charts.formatTime`` in static/dashboard/charts.js)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
