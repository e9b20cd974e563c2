"""Python client of Pancap Serve, the panoptic captioning gRPC server.

    from pancap_client import Client

    with Client("127.0.0.1:50051") as c:
        print(c.caption("photo.jpg").caption)
        for event in c.stream_caption("photo.jpg"):
            print(event.WhichOneof("event"))

The message types are the generated ones, re-exported as ``pancap_client.pb``.
Installing the package (``pip install clients/python``) generates them.
"""

from pancap_client._gen import pancap_pb2 as pb
from pancap_client.client import Client, ImageInput

__all__ = ["Client", "ImageInput", "pb"]
