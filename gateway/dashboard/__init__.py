"""The staff usage dashboard: chart aggregations (``queries``), the hourly rollup behind long ranges
(``rollup``), pure helpers (``ranges``, ``histogram``, ``sql``) and the view (``views``)."""
