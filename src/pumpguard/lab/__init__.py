"""The lab: whole systems composed from the layers below (physiology, devices, controllers)."""
