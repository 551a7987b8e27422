"""The ledger's rows say what their request was for: a chat turn, or a model-made title."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("chat", "0003_conversation_search_index")]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="kind",
            field=models.CharField(choices=[("turn", "Turn"), ("title", "Title")], default="turn", max_length=16),
        ),
    ]
