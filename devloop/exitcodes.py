"""Exit codes of `devloop sync` (and of `watch` when it cannot start). Documented in the README;
distinct so scripts and editor tasks can tell what went wrong without parsing output."""

OK = 0
BUILD_FAILED = 1
CONFIG_ERROR = 2
ROLLOUT_FAILED = 3
CLUSTER_UNREACHABLE = 4
DEPLOY_FAILED = 5  # delivery, install or patch failed (missing tool, missing Deployment, ...)
INTERRUPTED = 130

DESCRIPTIONS = {
    OK: "everything requested is built, deployed and ready",
    BUILD_FAILED: "an image build failed",
    CONFIG_ERROR: "devloop.yaml (or the command line) is invalid",
    ROLLOUT_FAILED: "a rollout failed or timed out (crash loop, image pull error, deadline)",
    CLUSTER_UNREACHABLE: "the Kubernetes API server was unreachable or refused the credentials",
    DEPLOY_FAILED: "delivering the image, installing the chart or patching the Deployment failed",
    INTERRUPTED: "interrupted (Ctrl-C / SIGTERM)",
}
