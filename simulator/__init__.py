"""A simulated GPU fleet that speaks the real protocols (Kubernetes REST, dcgm-exporter and
vLLM metrics, the pool admin protocol), and the GPU performance model behind it, usable
in-process on a virtual clock for back-testing. No Django here. See docs/simulator.md.
"""
