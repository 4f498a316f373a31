"""Planning, pure: a resolution range becomes optimization profiles (``profiles``) with one routing rule, where an
image runs under that rule (``routing``), the grid of sizes to check (``grid``), profile files (``profile_file``),
and plans proposed from the sizes of real images (``from_images``)."""
