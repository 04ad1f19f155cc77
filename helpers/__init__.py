"""Shared, tested code for the FaKe-ViT course notebooks.

Where each lesson meets the package (as d2l's helpers say where they are defined):

    lesson  module          what it holds
    all     course          small/full mode (MODE), the course home (Drive in Colab), expect(), device
    01, 02  vit             the Vision Transformer block by block; loads torchvision's weights
    01, 02  vit_figure      the architecture figure: Figure 1 and Eq. 1-4 with the names in vit
    01-03   checks          the your-turn checks: your code against the reference, with hints
    01-03   mistakes        the classic mistakes the checks recognise, and the hint for each
    03      images          safe decoding of any image file to RGB; the pixel-limit check
    03      datasets        indexing a folder, the Dataset, the stratified split, DataLoaders
    03      toy             the toy fake-versus-real dataset (small mode)
    03      fake_or_real    the real dataset: download, checked extraction, the prepared copy
    03      image_cache     every image of a folder decoded once; loaders read pixels, not files
    03      data            datasets by name (get_dataset) and `python -m helpers.data`
    03      data_plots      sample grids and mean spectra of the data (also lesson 05)
    03      transforms      every transform, from ImageNet's mean and std (also lesson 04)
    03      recipes         the training recipe as data: scratch, tutorial, linear_probe, finetune
    03      engine          train_one_epoch, fit (a whole run of a recipe), fit_linear_probe (04)
    03      evaluation      predictions, metrics (accuracy ... AUROC), cached features (04)
    03      training_state  what fit saves after every epoch, so a killed run resumes exactly
    03      files           the one atomic write; folders published complete or not at all
    04      pretrained      torchvision's ImageNet ViT-B/16 with a new head; freezing for a recipe
    04, 06  inference       export a detector (safetensors + JSON) and predict with it
    05, 06  detectors       the detector a lesson examines: found before any data, or made and announced
    05      perturbations   JPEG re-compression and resizing, to test a detector's robustness
    06      demo            the Gradio page (app/app.py); demo_server runs it as a process
    --      train           `python -m helpers.train`: a recipe from the command line
    --      cli             how the command lines fail: one `error: ...` line, exit status 1 or 2

Words with one meaning each: *mode* is the run size (small or full), *recipe* the training
strategy, *precision* the numeric format (fp32, bf16, fp16; the metric is ``val_precision``), a
*detector* is an exported model (``model.safetensors`` + ``config.json``) and the *training state*
is what a run resumes from (``training_state/``).
"""

__version__ = "0.1.0"
