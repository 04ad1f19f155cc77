"""What only the lessons need: your-turn checks, their mistakes, the lessons' own models.

Its modules, and the lesson that explains each:

    checks           the your-turn checks: your code against the reference, with a hint (lessons 01-03)
    detector_checks  the your-turn checks of the detector lessons: freezing, rollout, threshold (04-06)
    mistakes         the classic mistakes the checks recognise, and the hint for each
    toy_pretrained   small mode's stand-in for ImageNet pretraining: a vit_tiny trained on the toy set (04)
    detectors        the detector lessons 05 and 06 examine: found on disk, or made and announced
"""
