"""CrossGuard policy pack of ray-platform: rules are plain functions in policy.rules."""
