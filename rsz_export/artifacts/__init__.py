"""What a run leaves behind and how it is trusted: atomic files, locks and hashes (``files``), the manifest
(``manifest``), and the facts of the host it ran on (``host``)."""
