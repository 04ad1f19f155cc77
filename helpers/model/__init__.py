"""The model: the Vision Transformer, block by block (lessons 01 and 02).

Its modules, and the lesson that explains each:

    vit                  the ViT and its blocks, the config and presets (lesson 02; the patch embedding: 01)
    torchvision_weights  torchvision's ViT weights loaded key by key into ours (lessons 02 and 04)
    pretrained           torchvision's ImageNet ViT-B/16 with a new head; freezing for a recipe (lesson 04)
    figure               the architecture figure: Figure 1 and Eq. 1-4 with the names in vit (lesson 02)
    limits               the config's limits and the weights' key and shape checks (no lesson: hardening)
"""
