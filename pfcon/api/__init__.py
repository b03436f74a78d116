"""HTTP only: routes, schemas, auth and error handlers. No storage or engine logic here."""
