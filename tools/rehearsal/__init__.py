"""The full-mode rehearsal's parts, shared by ``tools/rehearse.py`` (CPU, in ``make test``) and
``tools/gpu_rehearsal.py`` (one run on a GPU), and imported by their tests:

- :mod:`fake_hub`: serves a folder over HTTP the way the Hub serves dataset files to ``hf_hub_download``.
- :mod:`standins`: writes the stand-in ``train.zip`` and the stand-in ``vit_b_16-c867db91.pth``.
- :mod:`runtime`: a fresh runtime per notebook (own folder and caches, helpers from a wheel), papermill.
- :mod:`checks`: what the rehearsal checks after each notebook.
- :mod:`sizes`: the smallest papermill sizes per lesson, for the CPU rehearsal and ``--tiny``.
- :mod:`gpu`: what the GPU run measures (peak memory, precision, the slowest cells).
"""
