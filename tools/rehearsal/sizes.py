"""The CPU rehearsal's papermill parameters per lesson, on top of ``MODE=full``: the smallest sizes
that still run every cell. ``tools/rehearse.py`` runs every lesson with them; ``tools/gpu_rehearsal.py
--tiny`` uses them to check that script without a GPU. ``python tools/rehearse.py --check-sizes``
checks that every name is a parameter of its notebook.
"""

from __future__ import annotations

CPU_SIZES: dict[str, dict] = {
    "01_patch_embeddings": {},
    "02_vit_blocks": {"NUM_IMAGES": 2},
    "03_training_from_scratch": {
        "OVERRIDES": {
            "COMPARE_PER_CLASS": 4,
            "COMPARE_IMAGE_SIZE": 32,
            "COMPARE_EPOCHS": 1,
            "COMPARE_BATCH_SIZE": 8,
            "IMAGE_SIZE": 64,
            "PATCH_SIZE": 16,
            "EPOCHS": 2,
            "BATCH_SIZE": 16,
        }
    },
    "04_fine_tuning": {
        "OVERRIDES": {"IMAGE_SIZE": 32, "BATCH_SIZE": 8, "PROBE_EPOCHS": 2, "FINETUNE_EPOCHS": 1}
    },
    "05_evaluation_and_interpretation": {"OVERRIDES": {"IMAGE_SIZE": 64, "EQUALISE": (128, 90)}},
    "06_deployment": {"OVERRIDES": {"BATCH_SIZES": [1, 4], "LATENCY_REPEATS": 2, "EVAL_PER_CLASS": 16}},
}
