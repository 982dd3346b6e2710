"""What Airflow reads through the ``apache_airflow_provider`` entry point."""

from tofuflow_provider import __version__

#: The connection form's extra fields (Airflow 3 reads them from here, without importing the
#: hook); stored in the connection's extras under these names.
CONN_FIELDS = {
    "ca_bundle": {
        "label": "CA bundle (PEM file path)",
        "schema": {"type": ["string", "null"]},
        "description": "the CA that signed the coordinator's certificate",
    },
    "client_cert": {
        "label": "Client certificate (PEM file path)",
        "schema": {"type": ["string", "null"]},
        "description": "for a coordinator that asks for client certificates (mutual TLS)",
    },
    "client_key": {
        "label": "Client key (PEM file path)",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
    },
}


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-tofuflow",
        "name": "tofuflow",
        "description": "OpenTofu plan, approval, apply and workflows on a tofuflow coordinator.",
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
                "hook-name": "tofuflow",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Coordinator URL", "password": "API token"},
                    "placeholders": {
                        "host": "https://tofuflow.example.com:7701",
                        "password": "an API token (tofuflow token create)",
                    },
                },
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
                "python-modules": [
                    "tofuflow_provider.operators.tofuflow",
                    "tofuflow_provider.operators.workflow",
                ],
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
