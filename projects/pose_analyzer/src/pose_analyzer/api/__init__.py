"""HTTP and WebSocket routes of pose_analyzer, one router per resource."""
