"""Serving a detector (lesson 06): export without pickle, predict any upload, the web demo.

Its modules, and the lesson that explains each:

    inference    save_detector (safetensors + JSON), load_predictor, Predictor
    demo         the Gradio page (``python app/app.py``) and its upload checks
    demo_server  the demo run as a process (tests, the screenshot, the workshop)
"""
