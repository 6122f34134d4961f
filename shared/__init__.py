"""Code both the web app and the worker need: settings, the store, the schema, the errors."""
