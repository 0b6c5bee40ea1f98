"""Static security scanning of model files (``sdmodel scan``)."""
