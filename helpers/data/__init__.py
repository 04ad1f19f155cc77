"""The data: from image files to batches (lesson 03; 04 to 06 reuse it). ``python -m helpers.data`` makes
the toy set, downloads the real one and builds a cache.

    images        safe decoding of any image file to RGB; the pixel-limit check
    datasets      indexing a folder, the plain Dataset, the stratified split (lesson 03)
    loaders       make_loader, the one place DataLoaders are built, and create_dataloaders
    transforms    every transform, from ImageNet's mean and std (lessons 03 and 04)
    toy           the toy fake-versus-real dataset (small mode)
    fake_or_real  the real dataset: download, checked extraction, the prepared copy (full mode)
    sources       datasets by name: get_dataset("toy" | "fake_or_real")
    perturbations JPEG re-compression and resizing, to test a detector's robustness (lesson 05)
    index         the decode check: which files of a folder decode (hardening)
    cache         every image of a folder decoded once; folder_dataset reads pixels, not files (full mode)
    archives      checked zip extraction (hardening)
"""
