"""A project's manifests (Helm chart, kustomization or plain YAML) as a watched input:
render.py renders, plan.py decides (pure), apply.py talks to the API, session.py runs one apply."""
