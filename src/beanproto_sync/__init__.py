"""beanproto_sync: a blocking beanstalkd client over ``socket``, driving the
:mod:`beanproto` core. (Work in progress: the client lands with its own issue.)"""
