"""What each view shows: serializers that return the pydantic models the API documents."""
