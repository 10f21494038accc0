"""`modalmesh doctor`: a node's self-check before it joins the fleet (GPUs, engines, domains, disk, NATS)."""
