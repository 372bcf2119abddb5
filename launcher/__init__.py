"""What the platform ships beside a team's code to run it (Ray and the standard library only)."""
