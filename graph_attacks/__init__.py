"""CP-GBA and graph backdoor baselines and defences on jraph."""
