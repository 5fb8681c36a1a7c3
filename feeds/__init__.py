"""Permissioned subscription feeds back down to the stations (scope, fields, masking, delivery, audit): not built yet, see the open feeds issue."""
