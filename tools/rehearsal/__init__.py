"""Stand-ins for the full-mode rehearsal (``tools/rehearse.py``): a local Hugging Face Hub, a
``train.zip`` with the real dataset's layout, and random ViT-B/16 weights in torchvision's cache.

- :mod:`fake_hub`: serves a folder over HTTP the way the Hub serves dataset files to ``hf_hub_download``.
- :mod:`standins`: writes the stand-in ``train.zip`` and the stand-in ``vit_b_16-c867db91.pth``.
"""
