"""The care loop: automation rules turn events and time into messages, coupons, tags and follow-up tasks."""
