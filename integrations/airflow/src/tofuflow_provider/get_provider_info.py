"""What Airflow reads through the ``apache_airflow_provider`` entry point."""

from tofuflow_provider import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-tofuflow",
        "name": "tofuflow",
        "description": "OpenTofu plan, approval and apply on a tofuflow coordinator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "tofuflow",
                "external-doc-url": "https://github.com/tofuflow/tofuflow",
                "tags": ["software"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "tofuflow",
                "hook-class-name": "tofuflow_provider.hooks.tofuflow.TofuflowHook",
            }
        ],
        "hooks": [
            {
                "integration-name": "tofuflow",
                "python-modules": ["tofuflow_provider.hooks.tofuflow"],
            }
        ],
        "operators": [
            {
                "integration-name": "tofuflow",
                "python-modules": ["tofuflow_provider.operators.tofuflow"],
            }
        ],
        "sensors": [
            {
                "integration-name": "tofuflow",
                "python-modules": ["tofuflow_provider.sensors.tofuflow"],
            }
        ],
        "triggers": [
            {
                "integration-name": "tofuflow",
                "python-modules": ["tofuflow_provider.triggers.tofuflow"],
            }
        ],
        "extra-links": ["tofuflow_provider.links.tofuflow.TofuflowRunLink"],
    }
