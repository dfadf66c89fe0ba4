"""Tenant isolation down to the cluster: an operator of one tenant tries every field of every
create and update, across two tenants and two clusters, then the control loop ticks both
clusters; afterwards no Deployment or ResourceQuota outside that tenant's namespaces changed.

The clusters are the simulator (a real process speaking the Kubernetes REST subset); the
attacker uses the REST API with a token, as automation would.
"""

import itertools

import pytest
from kubernetes import client as k8s
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clusters.models import Cluster
from quotas.models import GpuType, Quota
from scaling.loop import tick_cluster
from scaling.models import Decision, ScalingPolicy, Workload
from tenants.models import Membership, Namespace, Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CLUSTERS = ("east", "west")
# Namespaces of every kind on both clusters: acme's own (acme-chat on east, acme-west on west
# by mapping), globex's, the cluster's own, and one nobody owns.
ACME_OWN = {"east": "acme-chat", "west": "acme-west"}
NAMESPACES = ("acme-chat", "acme-west", "globex-ml", "kube-system", "default", "nobodys")
DEPLOYMENTS = {"acme-chat": "chat", "acme-west": "chat", "globex-ml": "train", "kube-system": "dns"}


def deployment(namespace, name, replicas):
    return {
        "namespace": namespace,
        "name": name,
        "model": MODEL,
        "gpu_type": "A100-80GB",
        "replicas": replicas,
        "cold_start_s": 1.0,
        "load": {"kind": "constant", "rate_rps": 0.5, "input_mean": 200, "output_mean": 50},
    }


FLEET = {
    "clusters": [
        {
            "name": name,
            "nodes": [{"gpu_type": "A100-80GB", "count": 2, "gpus_per_node": 8}],
            "namespaces": ["default", "nobodys"],
            "workloads": [
                deployment(ACME_OWN[name], "chat", 2),
                # Free Deployments in acme's own namespace, named like the others' ones.
                deployment(ACME_OWN[name], "train", 1),
                deployment(ACME_OWN[name], "new", 1),
                deployment("globex-ml", "train", 3),
                deployment("globex-ml", "serve", 3),  # no workload registered for it
                deployment("kube-system", "dns", 2),
            ],
        }
        for name in CLUSTERS
    ]
}


def cluster_state(url):
    """Every Deployment's replicas and every ResourceQuota's GPU limit, on both clusters."""
    state = {}
    for name in CLUSTERS:
        api = k8s.ApiClient(k8s.Configuration(host=f"{url}/{name}"))
        for d in k8s.AppsV1Api(api).list_deployment_for_all_namespaces().items:
            state[(name, "deploy", d.metadata.namespace, d.metadata.name)] = d.spec.replicas
        for q in k8s.CoreV1Api(api).list_resource_quota_for_all_namespaces().items:
            hard = (q.spec.hard or {}).get("requests.nvidia.com/gpu")
            state[(name, "quota", q.metadata.namespace, q.metadata.name)] = hard
    return state


def not_acmes(state):
    return {key: value for key, value in state.items() if key[2] != ACME_OWN[key[0]]}


@pytest.fixture
def fleet(start_simulator, django_user_model, settings):
    settings.API_THROTTLE_RATE = None  # hundreds of attempts in a few seconds
    url = start_simulator(FLEET, speed=4.0)
    gpu = GpuType.objects.create(name="A100-80GB", memory_gib=80, node_label="A100")
    clusters = {
        name: Cluster.objects.create(
            name=name,
            api_url=f"{url}/{name}",
            metrics_source="exporter",
            metrics_url=f"{url}/{name}/metrics",
        )
        for name in CLUSTERS
    }
    acme = Tenant.objects.create(slug="acme-chat", name="Acme chat")
    globex = Tenant.objects.create(slug="globex-ml", name="Globex ML")
    Namespace.objects.create(tenant=acme, cluster=clusters["west"], name="acme-west")
    Quota.objects.create(tenant=acme, gpu_type=gpu, nominal=12)
    Quota.objects.create(tenant=globex, gpu_type=gpu, nominal=16)
    alice = django_user_model.objects.create_user("alice", password="pw-for-tests-1")
    Membership.objects.create(user=alice, tenant=acme, role="admin")
    for name, cluster in clusters.items():
        for tenant, namespace, replicas in ((acme, ACME_OWN[name], 2), (globex, "globex-ml", 3)):
            workload = Workload.objects.create(
                tenant=tenant,
                cluster=cluster,
                namespace=namespace,
                deployment=DEPLOYMENTS[namespace],
                model_name=MODEL,
                gpu_type=gpu,
            )
            mode = "enforce" if tenant == acme else "off"
            ScalingPolicy.objects.create(
                workload=workload,
                algorithm="hpa",
                target=8,
                min_replicas=replicas,
                max_replicas=replicas,
                mode=mode,
            )
    for cluster in clusters.values():
        tick_cluster(cluster.pk)  # the ResourceQuotas are written once, as a steady loop has
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    return url, clusters, client


def tick_all(clusters, times=3):
    for _ in range(times):
        for cluster in clusters.values():
            tick_cluster(cluster.pk)


def may_use(tenant, cluster, namespace):
    return tenant == "acme-chat" and ACME_OWN[cluster] == namespace


def test_no_field_of_any_write_lets_an_admin_of_one_tenant_touch_anothers_cluster_objects(fleet):
    url, clusters, alice = fleet
    before = cluster_state(url)
    assert before[("east", "quota", "globex-ml", "gpu-control-plane")] == "16"
    own = {w.cluster.name: w for w in Workload.objects.filter(tenant__slug="acme-chat")}
    globex_workload = Workload.objects.filter(tenant__slug="globex-ml").earliest("pk")
    answers = []

    # Creates: every tenant x cluster x namespace x Deployment.
    for tenant, cluster, namespace, name in itertools.product(
        ("acme-chat", "globex-ml"), CLUSTERS, NAMESPACES, ("chat", "train", "dns", "new")
    ):
        body = {
            "tenant": tenant,
            "cluster": cluster,
            "namespace": namespace,
            "deployment": name,
            "model_name": MODEL,
            "gpu_type": "A100-80GB",
        }
        response = alice.post("/api/v1/workloads/", body, format="json")
        taken = (namespace, name) == (ACME_OWN[cluster], "chat")
        allowed = may_use(tenant, cluster, namespace) and not taken
        exists = name in ("chat", "train", "new")  # in acme's own namespaces
        assert response.status_code == (201 if allowed and exists else 400), (body, response)
        if allowed and not exists:  # refused for the Deployment alone, in her own namespace
            assert set(response.json()["errors"]) == {"deployment"}, response.content
        if response.status_code == 201:
            created = Workload.objects.get(pk=response.json()["id"])
            ScalingPolicy.objects.create(
                workload=created, target=1, min_replicas=1, max_replicas=1, mode="enforce"
            )
        answers.append(response)

    # Updates of her own workloads: every field, alone and together.
    for cluster_name, workload in own.items():
        url_of = f"/api/v1/workloads/{workload.pk}/"
        original = {
            "tenant": "acme-chat",
            "cluster": cluster_name,
            "namespace": workload.namespace,
            "deployment": "chat",
        }
        for tenant, cluster, namespace in itertools.product(
            ("acme-chat", "globex-ml"), CLUSTERS, NAMESPACES
        ):
            for body in (
                {"namespace": namespace},
                {"cluster": cluster},
                {"tenant": tenant},
                {"tenant": tenant, "cluster": cluster, "namespace": namespace},
                {"cluster": cluster, "namespace": namespace, "deployment": "train"},
            ):
                merged = original | body
                response = alice.patch(url_of, body, format="json")
                if not may_use(merged["tenant"], merged["cluster"], merged["namespace"]):
                    assert response.status_code == 400, (body, response.content)
                    assert "already" not in response.content.decode(), body
                    continue
                clash = Workload.objects.filter(
                    cluster__name=merged["cluster"],
                    namespace=merged["namespace"],
                    deployment=merged["deployment"],
                ).exclude(pk=workload.pk)
                assert response.status_code == (400 if clash.exists() else 200), body
                assert alice.patch(url_of, original, format="json").status_code == 200

    # Policies, quotas, memberships and namespace mappings pointing at the other tenant.
    policy = own["east"].policy
    refused = [
        alice.post("/api/v1/policies/", {"workload": globex_workload.pk, "target": 1}, "json"),
        alice.patch(f"/api/v1/policies/{policy.pk}/", {"workload": globex_workload.pk}, "json"),
        alice.patch(f"/api/v1/policies/{globex_workload.policy.pk}/", {"mode": "enforce"}, "json"),
        alice.post(
            "/api/v1/quotas/",
            {"tenant": "acme-chat", "gpu_type": "A100-80GB", "nominal": 64},
            "json",
        ),
        alice.patch(
            f"/api/v1/quotas/{Quota.objects.get(tenant__slug='acme-chat').pk}/",
            {"nominal": 64},
            "json",
        ),
        alice.post(
            "/api/v1/memberships/",
            {"user": "alice", "tenant": "globex-ml", "role": "admin"},
            "json",
        ),
        *[
            alice.post(
                "/api/v1/namespaces/",
                {"tenant": "acme-chat", "cluster": cluster, "name": namespace},
                "json",
            )
            for cluster, namespace in itertools.product(CLUSTERS, NAMESPACES)
        ],
    ]
    assert all(400 <= r.status_code < 500 for r in refused), [r.content for r in refused]
    assert Namespace.objects.count() == 1

    tick_all(clusters)
    assert not_acmes(cluster_state(url)) == not_acmes(before)
    for response in answers:
        assert response.status_code < 500


def test_the_loop_scales_nothing_outside_the_tenants_namespaces_whatever_its_rows_say(fleet):
    """Rows that predate the rule (written past validation) and a mapping removed later: the
    loop holds them with a reason and writes nothing to the cluster for them."""
    url, clusters, _ = fleet
    before = cluster_state(url)
    acme = Tenant.objects.get(slug="acme-chat")
    gpu = GpuType.objects.get()
    for cluster, namespace, name in (
        (clusters["east"], "globex-ml", "serve"),
        (clusters["west"], "kube-system", "dns"),
    ):
        rogue = Workload(
            tenant=acme,
            cluster=cluster,
            namespace=namespace,
            deployment=name,
            model_name=MODEL,
            gpu_type=gpu,
        )
        Workload.objects.bulk_create([rogue])  # no validation: as a row from before the rule
        ScalingPolicy.objects.create(
            workload=Workload.objects.get(cluster=cluster, namespace=namespace, deployment=name),
            target=1,
            min_replicas=1,
            max_replicas=1,
            mode="enforce",
        )
    # The west mapping is removed: acme-west is nobody's now, so its workload holds too.
    west_chat = Workload.objects.get(cluster=clusters["west"], namespace="acme-west")
    ScalingPolicy.objects.filter(workload=west_chat).update(min_replicas=4, max_replicas=4)
    Namespace.objects.all().delete()

    tick_all(clusters)
    after = cluster_state(url)
    untouched = {k: v for k, v in before.items() if k[2] != "acme-chat"}
    assert {k: after.get(k) for k in untouched} == untouched
    # No ResourceQuota appeared either (kube-system has none; acme-west's is left as it was).
    assert {k for k in after if k[1] == "quota"} == {k for k in before if k[1] == "quota"}
    held = Decision.objects.filter(workload__tenant=acme, outcome="error")
    reasons = {(d.workload.cluster.name, d.workload.namespace): d.reason for d in held}
    for where in (("east", "globex-ml"), ("west", "kube-system"), ("west", "acme-west")):
        assert (
            f"namespace {where[1]} on cluster {where[0]} is not owned by tenant acme-chat"
            in (reasons[where])
        )
