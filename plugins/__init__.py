"""Built-in task plugins (registered through the ``tx`` entry-point group like any other)."""
