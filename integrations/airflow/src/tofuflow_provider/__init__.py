"""Apache Airflow provider for tofuflow (OpenTofu runs on a tofuflow coordinator)."""

__version__ = "0.1.0"
