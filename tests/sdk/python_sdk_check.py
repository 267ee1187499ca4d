"""Drives a running service with Microsoft's official Python Graph SDK, unchanged.

An official Graph SDK pointed at our base URL must work without changing a line
(docs/wire-contract.md, "SDK compatibility"); this script is that check. It is not part of
`cargo test` (it needs the SDK from PyPI and a running service);
`tests/contract/run-live-checks.sh`, which `.ci/run` calls, runs it against a fresh service on
every CI run. By hand:

    pip install msgraph-beta-sdk==1.66.0
    cargo run -p cmp-server &                              # the service on 127.0.0.1:8080
    TOKEN=$(cargo run -q -p cmp-server -- mint-token)
    python3 tests/sdk/python_sdk_check.py http://127.0.0.1:8080/beta "$TOKEN"

It creates partners with the SDK's own models, reads one back, lists with $filter, $orderby,
$select, $top and $count, pages with the SDK's PageIterator through @odata.nextLink, counts,
patches and deletes, and checks every answer through the SDK's typed models. Exit code 0 when
everything holds.
"""

import asyncio
import datetime
import sys
import uuid
from urllib.parse import urlparse

from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.device_management.compliance_management_partners.compliance_management_partners_request_builder import (
    ComplianceManagementPartnersRequestBuilder,
)
from msgraph_beta.generated.models.all_devices_assignment_target import AllDevicesAssignmentTarget
from msgraph_beta.generated.models.compliance_management_partner import ComplianceManagementPartner
from msgraph_beta.generated.models.compliance_management_partner_assignment import (
    ComplianceManagementPartnerAssignment,
)
from msgraph_beta.generated.models.device_management_partner_tenant_state import (
    DeviceManagementPartnerTenantState,
)
from msgraph_beta.generated.models.group_assignment_target import GroupAssignmentTarget
from msgraph_core import PageIterator


class FixedToken(AccessTokenProvider):
    """Hands the SDK a token minted by `cmp-server mint-token`."""

    def __init__(self, token: str, host: str) -> None:
        self.token = token
        self.validator = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri, additional_authentication_context=None):
        return self.token

    def get_allowed_hosts_validator(self):
        return self.validator


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        raise SystemExit(1)


async def main(base_url: str, token: str) -> None:
    host = urlparse(base_url).netloc
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(FixedToken(token, host)))
    adapter.base_url = base_url
    client = GraphServiceClient(request_adapter=adapter)
    partners = client.device_management.compliance_management_partners
    run = uuid.uuid4().hex[:8]

    group = str(uuid.uuid4())
    created = await partners.post(
        ComplianceManagementPartner(
            display_name=f"SDK partner {run} 00",
            partner_state=DeviceManagementPartnerTenantState.Enabled,
            last_heartbeat_date_time=datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc),
            mac_os_onboarded=True,
            mac_os_enrollment_assignments=[
                ComplianceManagementPartnerAssignment(target=GroupAssignmentTarget(group_id=group))
            ],
            additional_data={"linuxOnboarded": True},
        )
    )
    check(created is not None and created.id is not None, "create returns the new partner with its id")
    check(created.partner_state == DeviceManagementPartnerTenantState.Enabled, "enum parsed by the SDK")
    target = created.mac_os_enrollment_assignments[0].target
    check(isinstance(target, GroupAssignmentTarget) and target.group_id == group, "target typed as groupAssignmentTarget")
    check(created.last_heartbeat_date_time.microsecond == 123456, "DateTimeOffset parsed by the SDK")

    for n in range(1, 13):
        await partners.post(ComplianceManagementPartner(display_name=f"SDK partner {run} {n:02}"))

    fetched = await partners.by_compliance_management_partner_id(created.id).get()
    check(fetched.display_name == created.display_name, "get by id")

    query = ComplianceManagementPartnersRequestBuilder.ComplianceManagementPartnersRequestBuilderGetQueryParameters(
        filter=f"startswith(displayName,'SDK partner {run}') and partnerState eq 'unknown'",
        orderby=["displayName desc"],
        select=["id", "displayName"],
        top=5,
        count=True,
    )
    page = await partners.get(RequestConfiguration(query_parameters=query))
    check(page.odata_count == 12, f"$count with $filter: {page.odata_count}")
    check([p.display_name for p in page.value] == [f"SDK partner {run} {n:02}" for n in range(12, 7, -1)], "$orderby desc and $top")
    check(page.odata_next_link is not None and page.odata_next_link.startswith(base_url), "absolute @odata.nextLink")

    seen = []
    iterator = PageIterator(page, adapter)

    def collect(item):
        seen.append(item.display_name)
        return True

    await iterator.iterate(collect)
    check(seen == [f"SDK partner {run} {n:02}" for n in range(12, 0, -1)], f"PageIterator walks every page once ({len(seen)} items)")

    count_filter = partners.count.CountRequestBuilderGetQueryParameters(filter=f"startswith(displayName,'SDK partner {run}')")
    counted = await partners.count.get(RequestConfiguration(query_parameters=count_filter))
    check(counted == 13, f"/$count with $filter: {counted}")

    patched = await partners.by_compliance_management_partner_id(created.id).patch(
        ComplianceManagementPartner(display_name=f"SDK partner {run} renamed")
    )
    check(patched is not None and patched.display_name == f"SDK partner {run} renamed", "PATCH returns the updated partner")
    fetched.display_name = f"SDK partner {run} read-modify-write"
    rmw = await partners.by_compliance_management_partner_id(created.id).patch(fetched)
    check(rmw.display_name == fetched.display_name, "PATCH of the object the SDK read back")

    await partners.by_compliance_management_partner_id(created.id).delete()
    try:
        await partners.by_compliance_management_partner_id(created.id).get()
        check(False, "GET after DELETE answers 404")
    except Exception as error:  # the SDK raises ODataError
        code = getattr(getattr(error, "error", None), "code", None)
        check(getattr(error, "response_status_code", None) == 404 and code == "ResourceNotFound", f"GET after DELETE: 404 {code}")

    print("all checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        raise SystemExit(2)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
