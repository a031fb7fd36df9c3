"""The what-if simulator, fed by measured runs and labelled as simulation (owner: the simulator helper)."""
