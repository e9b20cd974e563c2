"""The four PancapChain stage prompts exactly as the authors send them (DESIGN.md
section 2, Go: chain.Prompt), with no dependency beyond the standard library so
that the scene engine (training/scenes.py) runs with Pillow and numpy only."""

PROMPTS = {
    1: "Please localize all entities in this image.",
    2: "Please specify the semantic tags of all entities based on their bounding boxes: {}",
    3: "Please specify missing entities and their locations for this image based on these specified entities: {}",
    4: ("Please provide a hyper-detailed description for this image, including all entities, their locations, "
        "attributes, and relationships, as well as the global image status, based on boxes and tags: {}"),
}
