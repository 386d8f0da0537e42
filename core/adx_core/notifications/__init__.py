"""Notifications: a provider interface with SMTP and webhook implementations."""

from adx_core.notifications.message import Message, NotificationRejectedError, Notifier, render
from adx_core.notifications.providers import notifier_from_settings

__all__ = ["Message", "NotificationRejectedError", "Notifier", "notifier_from_settings", "render"]
