"""Training and measuring (lesson 03, and 04 to 06 reuse it). ``python -m helpers.train`` is the command line.

loop          set_seed, train_one_epoch, fit: the training loop lesson 03 writes out
evaluation    predictions and metrics (accuracy ... AUROC), features of a frozen backbone
recipes       the training recipe as data: scratch, tutorial, linear_probe, finetune
precision     the numeric format (fp32, bf16, fp16) and the fp16 gradient scaler
probe         the linear probe on features computed once (lesson 04)
trust         can the detector be trusted: shortcut audit, intervals, operating point, leaks
run           around fit, for long runs: saved training state, exact resume, several GPUs
state         the training state on disk (what run saves and resumes from)
distributed   torchrun set-up, sampler and DistributedDataParallel wrapper
cli           ``python -m helpers.train``: a recipe from the command line
"""
