"""Planning, pure: a resolution range becomes optimization profiles (``profiles``) with one routing rule, the
grid of sizes to check (``grid``), profile files (``profile_file``), and plans proposed from the sizes of real
images (``from_images``)."""
