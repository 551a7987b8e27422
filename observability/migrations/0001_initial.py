from django.db import migrations


class Migration(migrations.Migration):
    initial = True

    dependencies = [("chat", "0002_conversation_owner_usagerecord_user")]

    operations = [
        migrations.CreateModel(
            name="UsageChart",
            fields=[],
            options={"verbose_name": "usage chart", "verbose_name_plural": "usage charts", "proxy": True},
            bases=("chat.usagerecord",),
        ),
    ]
