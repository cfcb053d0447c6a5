"""beanproto_anyio: an async beanstalkd client over anyio streams (asyncio and
trio), driving the :mod:`beanproto` core. (Work in progress: the client lands with
its own issue.)"""
