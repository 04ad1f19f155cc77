"""Shared, tested code for the FaKe-ViT course notebooks.

Modules:
    course     -- small/full mode, project paths, Colab detection
    vit        -- the Vision Transformer, block by block
    data       -- toy and real datasets, safe image loading, stratified splits, transforms
    engine     -- training and evaluation loops, metrics, checkpoints
    pretrained -- torchvision's ImageNet ViT-B/16 with a new head
    inference  -- export a trained model and predict on single images
    train      -- the `python -m helpers.train` command line
"""

__version__ = "0.1.0"
