"""Shared, tested code for the FaKe-ViT course notebooks, one folder per phase a learner meets.

    model/     the Vision Transformer block by block, torchvision's weights (lessons 01, 02, 04)
    data/      image files to batches: decoding, the Dataset and split, loaders, transforms, datasets
    train/     the training loop, recipes, metrics, precision; what wraps the loop for long runs
    lessons   module                  what the lessons use from it
    01-06     course                  choose, data_dir, detector_dir, expect, figures_dir, ...
    01-03     lessons.checks          check_attention, check_class_token, check_encoder_block, ...
    01-02     model.figure            draw_architecture
    01-06     model.vit               PatchEmbedding, ViT, ViTConfig, count_parameters, ...
    02,04     model.pretrained        check_published_weights, freeze_for_recipe, ...
    03-06     data.cache              folder_dataset
    03-06     data.datasets           CLASS_NAMES, ImageFolderDataset, find_images, ...
    03-06     data.images             ImageLoadError, load_image_rgb
    03-06     data.loaders            create_dataloaders, default_num_workers, make_loader
    03-06     data.sources            get_dataset
    03-05     data.transforms         IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, ...
    03,05-06  lessons.detectors       check_publishable, describe, evaluation_split, ...
    03-06     serving.inference       CONFIG_FILE, DETECTOR_DIR, DetectorError, FORMAT, ...
    03-06     train.evaluation        autocast, compute_metrics, extract_features, predict_loader
    03-04     train.loop              fit, set_seed, train_one_epoch
    03-06     train.precision         allow_tf32, resolve_precision
    03-04     train.recipes           RECIPES, Recipe, get_recipe, make_optimizer, ...
    03-06     train.trust             FAKE, bootstrap_interval, check_disjoint, ...
    04-05     data.toy                GENERATORS, UNSEEN_GENERATORS, make_toy_images, phase_gains
    04-06     lessons.detector_checks check_attention_rollout, check_freeze_and_group, ...
    04-05     lessons.toy_pretrained  load_source_model, tensor_loader
    04        train.probe             fit_linear_probe
    06        serving.demo            display_name, launch_demo
    06        serving.demo_server     free_port

Words with one meaning each: *mode* is the run size (small or full), *recipe* the training
strategy, *precision* the numeric format (fp32, bf16, fp16; the metric is ``val_precision``), a
*detector* is an exported model (``model.safetensors`` + ``config.json``) and the *training state*
is what a run resumes from (``training_state/``).
"""

__version__ = "0.1.0"
